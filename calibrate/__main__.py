import sys

from calibrate.cli import main

sys.exit(main(prog="python -m calibrate"))
