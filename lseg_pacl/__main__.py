from lseg_pacl.commands.cli import main

raise SystemExit(main())
