# Import by id.
terraform import fulcrum_listener.example <id>
