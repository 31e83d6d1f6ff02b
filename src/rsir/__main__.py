import sys

from rsir.cli import main

sys.exit(main())
