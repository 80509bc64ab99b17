from lseg_pacl.cli import main

raise SystemExit(main())
