from django.apps import AppConfig


class GitDeployConfig(AppConfig):
    name = "paas.gitdeploy"
    label = "gitdeploy"
