import sys

from bertpress.cli import main

sys.exit(main())
