import sys

from vhtui.cli import main

sys.exit(main())
