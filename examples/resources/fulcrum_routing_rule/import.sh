# Import by id.
terraform import fulcrum_routing_rule.example <id>
