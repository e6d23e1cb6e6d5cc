"""What runs in a Job pod besides the engines: reporting progress and results to the resource."""
