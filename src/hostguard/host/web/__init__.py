"""Web servers as host facts: sites, document roots, who serves them, and who may reach which path.

One model (:mod:`hostguard.host.web.model`) filled by one reader per server (nginx, Apache, Tomcat) and by
the PHP-FPM pool reader; the web family's checks see only the model.
"""
