"""Results: tables (report, sweep_table), notes and flags under them, the frontier, curves, figures (PNG), the
paper's rows and the reproduction report. Read from records and run files; no model is loaded here."""
