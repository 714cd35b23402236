import sys

from xpstream.cli import main

sys.exit(main())
