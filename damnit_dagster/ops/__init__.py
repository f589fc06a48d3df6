"""Operations: the command, the backend's processes, Supervisor, the demo."""
