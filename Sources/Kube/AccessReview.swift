import Foundation
import HTTP
import Support

/// Who holds a bearer token and what they may do, asked of the API server (TokenReview, then
/// SubjectAccessReview): the kube-rbac-proxy pattern, for drctl serve's own pages. drctl's account
/// needs `create` on tokenreviews and subjectaccessreviews (deploy/rbac-serve.yaml).
public struct AccessReview: Sendable {
    public struct User: Sendable, Equatable {
        public var name: String
        public var groups: [String]
    }

    /// What a request needs: a verb on a resource of an API group (a virtual one will do: RBAC
    /// rules need not name a served resource).
    public struct Attributes: Sendable, Equatable {
        public var verb: String
        public var group: String
        public var resource: String
        public init(verb: String, group: String, resource: String) { self.verb = verb; self.group = group; self.resource = resource }
    }

    let client: KubeClient
    public init(client: KubeClient) { self.client = client }

    /// The token's user, or nil when the API server does not accept it.
    public func authenticate(_ token: String) throws -> User? {
        let review: [String: Any] = ["apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview", "spec": ["token": token]]
        let r = try client.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body: Array(try JSONSerialization.data(withJSONObject: review)))
        let status = r["status"] as? [String: Any] ?? [:]
        guard status["authenticated"] as? Bool == true, let user = status["user"] as? [String: Any], let name = user["username"] as? String else { return nil }
        return User(name: name, groups: user["groups"] as? [String] ?? [])
    }

    public func allowed(_ user: User, _ a: Attributes) throws -> Bool {
        let review: [String: Any] = ["apiVersion": "authorization.k8s.io/v1", "kind": "SubjectAccessReview",
                                     "spec": ["user": user.name, "groups": user.groups,
                                              "resourceAttributes": ["verb": a.verb, "group": a.group, "resource": a.resource]]]
        let r = try client.request("POST", "/apis/authorization.k8s.io/v1/subjectaccessreviews", body: Array(try JSONSerialization.data(withJSONObject: review)))
        return (r["status"] as? [String: Any])?["allowed"] as? Bool ?? false
    }
}
