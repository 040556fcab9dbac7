"""Architecture search: the search-space language, strategies, evaluators, the trial book, the actor pool, the
ask/tell driver, run directories, and their reports and plots."""
