"""``python -m negrec`` is the ``negrec`` command."""

import sys

from negrec.cli import main

sys.exit(main())
