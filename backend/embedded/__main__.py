import sys

from backend.embedded import main

sys.exit(main(sys.argv[1:]))
