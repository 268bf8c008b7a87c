import sys

from jumpsearch.cli import main

sys.exit(main())
