# nbgrader reads the configuration of the folder it runs in; the course's lives in autograder/.
c = get_config()  # noqa: F821
load_subconfig("autograder/nbgrader_config.py")  # noqa: F821
