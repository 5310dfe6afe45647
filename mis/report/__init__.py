"""Tables and plots of results (markdown/CSV/JSON, PNG)."""
