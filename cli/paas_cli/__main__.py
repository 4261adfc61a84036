from paas_cli.main import main

raise SystemExit(main())
