def test_home_is_the_dashboard_behind_a_login(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/login/?next=/"
