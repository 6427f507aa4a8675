import sys

from pyreg.cli import main

sys.exit(main())
