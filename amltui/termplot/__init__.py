"""Terminal plots drawn as Rich text (braille dots): shared by both front ends, the command line and the dashboard.

They sit beside amltui/cli and amltui/tui, not inside either, so that neither front end imports the other
(docs/architecture.md). Textual widgets that show them live in amltui/tui/widgets.
"""
