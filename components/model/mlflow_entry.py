"""MLflow models-from-code entry for the trained model (`components.model.serving`): MLflow runs this file
when it loads the model, so the pyfunc is built from code and nothing is unpickled."""

from mlflow.models import set_model

from components.model.serving import DestaPyfunc

set_model(DestaPyfunc())
