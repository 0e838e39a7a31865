"""Teaching runs of student models: services, live pages, consumers, tasks."""
