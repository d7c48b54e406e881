"""Runs: their records and the index (records, store), their folders and status changes (folders, states), who
owns one (owners), the runs list both front ends show (view, filters, progress) and sweeps. No torch here."""
