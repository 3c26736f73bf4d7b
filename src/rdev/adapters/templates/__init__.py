"""Templates adapter: template folders (manifest, prompt, scaffold) rendered in a Jinja sandbox."""

from rdev.adapters.templates.provider import FolderTemplateProvider, builtin_templates_dir

__all__ = ["FolderTemplateProvider", "builtin_templates_dir"]
