import sys

from kew_plug.cli.main import main

sys.exit(main())
