"""The `nbconv` command-line app (installed as the package nbconv_cli)."""
