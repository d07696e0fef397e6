package server

// HTTPStatus is the HTTP status an error from Auth.Check answers with: 401
// for a missing, malformed or unknown token, 403 for too small a scope, 503
// when the token store did not answer. Routes that answer errors in their
// own shape (errortrack's Sentry web API) use it.
func HTTPStatus(err error) int { return httpStatus(err) }
