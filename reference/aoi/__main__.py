import sys

from aoi.cli import main

sys.exit(main())
