import sys

from protoship.cli import main

sys.exit(main())
