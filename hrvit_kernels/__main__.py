import sys

from hrvit_kernels.cli import main

sys.exit(main())
