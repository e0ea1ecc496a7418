import sys

from distributed.corpus import main

sys.exit(main())
