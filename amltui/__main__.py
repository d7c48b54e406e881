from amltui.cli import app

app(prog_name="amltui")
