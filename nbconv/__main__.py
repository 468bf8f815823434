"""`python -m nbconv ...` runs the nbconv command (same as the `nbconv` console script)."""
import sys

try:
    from nbconv_cli.main import main
except KeyboardInterrupt:  # Ctrl-C while the libraries load: one line, no traceback
    sys.stderr.write("\ninterrupted while starting; nothing done\n")
    sys.exit(130)

main()
