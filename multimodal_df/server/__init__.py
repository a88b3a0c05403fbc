"""The REST API and the web page (:mod:`.app`), around one loaded detector."""
