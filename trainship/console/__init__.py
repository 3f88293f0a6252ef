"""The local stack's web console (docs/console.md): the execution view of a deployment."""
