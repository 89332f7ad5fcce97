"""The Gradio app: one module per tab, each with plain handler functions (testable
without the UI) and a ``build()`` that lays the tab out inside an open ``gr.Blocks``.
Nothing is built at import."""
