import sys

from whisperseg.cli import main

sys.exit(main())
