"""``lseg-pacl stress`` (``make stress``): repeat the runs that once hung, under extra CPU load, and count the
stalls; a stalled run's every process is dumped (Python and native stacks, kernel wait channels) into its run
directory before it is killed. Outside ``make test``: it takes minutes to hours, by the counts asked for."""
