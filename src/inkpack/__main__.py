import sys

from inkpack.cli import main

sys.exit(main())
