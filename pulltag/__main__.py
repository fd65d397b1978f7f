import sys

from pulltag.cli import main

sys.exit(main())
