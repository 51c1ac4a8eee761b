def test_healthz_answers_without_login(client):
    response = client.get("/healthz")
    assert response.status_code == 200
    assert response.content == b"ok"


def test_home_leads_to_the_admin_until_the_dashboard_exists(client):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/admin/"
