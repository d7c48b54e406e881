"""Screens of the dashboard: runs, run detail, results, and the launch / confirmation modals."""
