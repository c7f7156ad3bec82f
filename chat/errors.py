class ChatError(Exception):
    """A request the chat refuses, with a message to show as it is and a stable code."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
