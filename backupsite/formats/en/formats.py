# The admin writes times as the dashboard's hover text does, "2026-11-27 14:02 UTC" (the
# server's zone is UTC); static/dashboard/localtime.js then shows them in the viewer's zone.
DATETIME_FORMAT = "Y-m-d H:i T"
SHORT_DATETIME_FORMAT = "Y-m-d H:i T"
