// Placeholder so the server layer has a source until src/server lands; delete it then.
