"""Widgets of the dashboard: the runs table and the terminal line chart."""
