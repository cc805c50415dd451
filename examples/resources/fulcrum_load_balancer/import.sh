# Import by id.
terraform import fulcrum_load_balancer.example <id>
