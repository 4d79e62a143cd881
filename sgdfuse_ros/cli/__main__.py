"""`python -m sgdfuse_ros.cli` runs the `sgdfuse` command."""

import sys

from sgdfuse_ros.cli.main import main

sys.exit(main())
