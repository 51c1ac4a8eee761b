"""What is known of each pair, below every page, /metrics, alerts and badges that show it.

facts.py gathers it from the database in bulk, lacking.py says what the backup lacks and
health.py judges it (both pure); dashboard/, monitoring/ and alerts/ read these and nothing
else, so every surface shows the same count and the same state.
"""
