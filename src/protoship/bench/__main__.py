"""`python -m protoship.bench`: see protoship.bench.run."""

import sys

from protoship.bench.run import main

sys.exit(main())
