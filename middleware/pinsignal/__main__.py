import sys

from pinsignal.cli import main

sys.exit(main())
