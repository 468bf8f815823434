"""`python -m nbconv ...` runs the nbconv command (same as the `nbconv` console script)."""
from nbconv_cli.start import main

main()
